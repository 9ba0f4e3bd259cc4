import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../src/backend/select.js';
import { parsePromptList } from '../src/jobs/prompt-list.js';
import { chooseBatch, MAX_AUTO_BATCH, planPromptList, runPromptList, type PromptListSummary } from '../src/jobs/run-prompt-list.js';
import { memoryBudget } from '../src/pipeline/memory-budget.js';
import { WanPipeline } from '../src/pipeline/wan-pipeline.js';
import { appendResults, arg, runMain } from './harness.js';

// npx tsx bench/prompt-list-cpu.ts [-- --clips N --steps N --backend cpu --no-record]
// Clips per hour of a prompt list on the bundled toy model (models/toy: 5 frames 32×32), run once
// in batches of 1 and once in the batch chooseBatch picks, the clips written as GIFs into a temporary
// folder; appends the figures to bench/RESULTS.md.

const TOY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'toy');

runMain(async () => {
  const clips = Number(arg('clips') ?? 8);
  const steps = Number(arg('steps') ?? 4);
  const backendName = arg('backend') ?? 'cpu';
  const backend = await selectBackend(backendName);
  const words = ['red', 'blue', 'green', 'yellow', 'white', 'black', 'orange', 'purple', 'grey', 'pink', 'brown', 'gold'];
  const text = Array.from({ length: clips }, (_, i) => JSON.stringify({ prompt: `a ${words[i % words.length]} ball rolling, take ${i}`, seed: i })).join('\n');
  const jobs = parsePromptList(text, 'bench.jsonl', 'gif');
  const pipe = await WanPipeline.fromPretrained(TOY);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-bench-prompts-'));
  try {
    const run = async (batch: number | undefined, dir: string): Promise<PromptListSummary> => {
      const plan = planPromptList(pipe.spec, jobs, 'bench.jsonl', path.join(tmp, dir), { numInferenceSteps: steps });
      return runPromptList(pipe, plan, { batch });
    };
    // warm-up: one clip, so that neither measured run pays the first call's costs
    await runPromptList(pipe, planPromptList(pipe.spec, jobs.slice(0, 1), 'bench.jsonl', path.join(tmp, 'warm'), { numInferenceSteps: steps }), { batch: 1 });
    const c = pipe.resolve({ prompt: 'x', numInferenceSteps: steps });
    const chosen = chooseBatch(pipe.spec, { numFrames: c.numFrames, height: c.height, width: c.width }, clips, memoryBudget());
    // batch 1 against the chosen batch, or against MAX_AUTO_BATCH where the choice is 1
    const other = chosen > 1 ? chosen : MAX_AUTO_BATCH;
    const one = await run(1, 'b1');
    const many = await run(other, 'many');
    const line = (name: string, s: PromptListSummary) =>
      `${name}: ${s.clipsPerHour.toFixed(0)} clips/hour (${s.made} clips in ${(s.totalMs / 1000).toFixed(1)}s, ${((s.totalMs / s.made) / 1000).toFixed(2)}s a clip, batches ${s.batches.join(',')})`;
    const lines = [
      line(`${backend}, batch 1${chosen === 1 ? ' (chosen)' : ''}`, one),
      line(`${backend}, batch ${other}${chosen === other ? ' (chosen)' : ''}`, many),
      `ratio: ${(many.clipsPerHour / one.clipsPerHour).toFixed(2)}× the clips per hour at batch ${other}`,
    ];
    for (const l of lines) console.log(l);
    if (!process.argv.includes('--no-record')) {
      appendResults({
        title: 'prompt-list-cpu',
        command: `npx tsx bench/prompt-list-cpu.ts --clips ${clips} --steps ${steps} --backend ${backendName}`,
        workload: `runPromptList over ${clips} prompts of equal settings on models/toy (5 frames 32×32, ${steps} steps, guidance 4, GIF output), text encoding, denoising, VAE decode and writing included, after a one-clip warm-up`,
        lines,
      });
    }
  } finally {
    pipe.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
