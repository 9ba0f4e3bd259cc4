export {
  type FlowScheduler,
  FlowSchedulerBase,
  loadScheduler,
  type NoiseLevel,
  parsePythonJson,
  type SchedulerJson,
  type SetTimestepsOptions,
  type SigmaSchedule,
} from './scheduler.js';
export { defaultFlowMatchEulerConfig, type FlowMatchEulerConfig, FlowMatchEulerDiscreteScheduler } from './flow-match-euler.js';
export { defaultFlowUniPCConfig, type FlowUniPCConfig, FlowUniPCMultistepScheduler } from './flow-unipc.js';
export { defaultFlowDPMSolverConfig, type FlowDPMSolverConfig, FlowDPMSolverMultistepScheduler } from './flow-dpmsolver.js';
