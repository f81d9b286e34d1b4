export * from './bootloader.ts';
export { FileBootloader, bootModel } from './bootloader-file.ts';
export { BOOTLOADERS, createBootloader } from './bootloaders.ts';
export * from './config.ts';
export * from './state.ts';
export * from './booted.ts';
export * from './health.ts';
export * from './install-plan.ts';
export * from './install.ts';
export * from './seeds.ts';
export * from './slot-device.ts';
export * from './agent.ts';
export {
  grubBootloader,
  GrubBootloader,
  GRUB_MAX_ATTEMPTS,
  type GrubScheme,
} from './bootloader-grub.ts';
export { GrubEnv, readGrubEnv, writeGrubEnv, GRUB_ENV_SIZE } from './grub-env.ts';
export { ubootBootloader, UbootBootloader, UBOOT_DEFAULT_LEFT } from './bootloader-uboot.ts';
export { readUbootEnv, writeUbootEnv, parseFwEnvConfig, type UbootEnvLayout } from './uboot-env.ts';
export { systemdBootBootloader } from './bootloader-systemd-boot.ts';
export { bareboxBootloader } from './bootloader-barebox.ts';
export { efiBootloader } from './bootloader-efi.ts';
export { customBootloader } from './bootloader-custom.ts';
export { FAULT_POINTS, faultPoint, type FaultPoint } from './fault.ts';
export {
  createTufClient,
  initTrustedRoot,
  initTrustedRootFromFile,
  tufErrorCode,
  DEFAULT_TUF_LIMITS,
  type TufClient,
  type TufClientOptions,
  type TufLimits,
  type TufTarget,
  type TufDownload,
} from './tuf-client.ts';
export * from './update.ts';
export * from './release-source.ts';
export * from './http-fetch.ts';
export * from './daemon.ts';
export * from './daemon-schedule.ts';
export {
  listenDaemonApi,
  httpStatusFor,
  MAX_REQUEST_BYTES,
  type DaemonApiServer,
} from './daemon-api.ts';
export { DaemonClient, probeDaemon } from './daemon-client.ts';
export {
  applyDeltaPack,
  deltaBases,
  maxPackBytes,
  type PackRange,
  type PackTarget,
  type PackOutcome,
} from './delta-install.ts';
