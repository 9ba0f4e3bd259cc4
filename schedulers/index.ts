export { type FlowScheduler, FlowSchedulerBase, type NoiseLevel, type SchedulerJson, type SetTimestepsOptions, type SigmaSchedule } from './scheduler.js';
export { loadScheduler } from './load-scheduler.js';
export { parsePythonJson } from '../src/config/python-json.js';
export { defaultFlowMatchEulerConfig, FlowMatchEulerConfig, FlowMatchEulerDiscreteScheduler } from './flow-match-euler.js';
export { defaultFlowUniPCConfig, FlowUniPCConfig, FlowUniPCMultistepScheduler } from './flow-unipc.js';
export { defaultFlowDPMSolverConfig, FlowDPMSolverConfig, FlowDPMSolverMultistepScheduler } from './flow-dpmsolver.js';
