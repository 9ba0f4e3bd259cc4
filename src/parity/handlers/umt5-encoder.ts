import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { UMT5EncoderModel } from '../../../layers/umt5-encoder-model.js';
import type { ParityHandler, ParityVariant } from '../types.js';

/**
 * umT5 encoder cases: text_encoder/ (transformers layout) run on input.input_ids with
 * input.attention_mask; debug.hidden_states.i (the embedding output, then each block's output,
 * the last one final-normed) and output.last_hidden_state.
 */
const handler: ParityHandler = {
  components: ['umt5-encoder'],
  async run(c) {
    const model = await UMT5EncoderModel.fromPretrained(path.join(c.dir, 'text_encoder'));
    const ids = c.tensor('input.input_ids');
    const mask = c.tensor('input.attention_mask');
    try {
      const out = model.forwardWithHiddenStates(ids, mask);
      const named: Array<[string, tf.Tensor]> = out.hiddenStates.map((h, i) => [`debug.hidden_states.${i}`, h]);
      named.push(['output.last_hidden_state', out.lastHiddenState]);
      const host: ParityVariant['tensors'] = named.map(([name, t]) => [name, { shape: t.shape, data: t.dataSync() }]);
      tf.dispose(named.map(([, t]) => t));
      return [{ tensors: host }];
    } finally {
      tf.dispose([ids, mask]);
      model.dispose();
    }
  },
};

export default handler;
