import { ConfigError } from '../src/errors.js';
import { findComponentConfig, readConfigObject } from '../weights/component.js';
import { SCHEDULER_FILES } from '../weights/families.js';
import { FlowDPMSolverMultistepScheduler } from './flow-dpmsolver.js';
import { FlowMatchEulerDiscreteScheduler } from './flow-match-euler.js';
import { FlowUniPCMultistepScheduler } from './flow-unipc.js';
import type { FlowScheduler, SchedulerJson } from './scheduler.js';

/** Each supported `_class_name` and how to build it from its config. */
const SCHEDULERS: Readonly<Record<string, (json: SchedulerJson) => FlowScheduler>> = {
  UniPCMultistepScheduler: (json) => FlowUniPCMultistepScheduler.fromJSON(json),
  FlowUniPCMultistepScheduler: (json) => FlowUniPCMultistepScheduler.fromJSON(json),
  FlowMatchEulerDiscreteScheduler: (json) => FlowMatchEulerDiscreteScheduler.fromJSON(json),
  DPMSolverMultistepScheduler: (json) => FlowDPMSolverMultistepScheduler.fromJSON(json),
  FlowDPMSolverMultistepScheduler: (json) => FlowDPMSolverMultistepScheduler.fromJSON(json),
};

/**
 * Builds the scheduler a checkpoint names in `_class_name`: UniPCMultistepScheduler / FlowUniPCMultistepScheduler,
 * FlowMatchEulerDiscreteScheduler, DPMSolverMultistepScheduler / FlowDPMSolverMultistepScheduler.
 * `dirOrJson`: a model folder (with `scheduler/`), the scheduler folder, the json file, or the parsed config.
 */
export async function loadScheduler(dirOrJson: string | SchedulerJson): Promise<FlowScheduler> {
  const json = typeof dirOrJson === 'string' ? readConfigObject(findComponentConfig(dirOrJson, SCHEDULER_FILES)) : dirOrJson;
  const name = json._class_name;
  if (typeof name !== 'string' || !Object.hasOwn(SCHEDULERS, name)) {
    throw new ConfigError(`scheduler config: _class_name ${JSON.stringify(name)} is not supported; valid: ${Object.keys(SCHEDULERS).join(', ')}`);
  }
  return SCHEDULERS[name](json);
}
