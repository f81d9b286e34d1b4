/** QEMU real-boot tests: disk images, kernels, scenarios. Test-only package. */
export {
  ensureArtefacts,
  ensureEfiArtefacts,
  RELEASES,
  type Artefacts,
  type EfiLoader,
  type ReleaseSpec,
} from './artefacts.ts';
export { cacheDir, cached, withLock, type Step } from './cache.ts';
export {
  listEspDir,
  readAgentState,
  readEspFile,
  readEspGrubEnvVars,
  readGrubEnvVars,
  readLayout,
  readPartitionFile,
  type DiskLayout,
} from './disk-state.ts';
export { parseRange, startFileServer, type FileServer, type Route } from './file-server.ts';
export { cutInstants, installProgress, mulberry32 } from './power-cut.ts';
export { cleanLine, OVMF_FD, qemuArgs, Vm, type ConsoleLine, type VmOptions } from './qemu.ts';
export {
  BOOT_MS,
  deviceState,
  guestJson,
  prepareRun,
  recordTiming,
  updateCommand,
  waitBoot,
  type Boot,
  type Run,
} from './scenario.ts';
