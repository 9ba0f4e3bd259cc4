// vitest setup file: silences tfjs's console notices in the test output, above all the
// "Hi, looks like you are running TensorFlow.js in Node.js" banner that every fresh CPU backend
// prints on its first tensor (tfjs-backend-cpu, gated by IS_NODE, printed through tfjs-core's
// log.warn). log.warn prints unless IS_TEST or PROD is set; PROD is the one that changes nothing
// else (IS_TEST also turns on tfjs's per-kernel memory-leak checks). The library and the CLI do
// not set it: a user's program still sees tfjs's notices.
import * as tf from '@tensorflow/tfjs-core';

tf.env().set('PROD', true);
