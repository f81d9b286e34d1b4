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
export {
  mergeEtc,
  diffEtc,
  DEFAULT_ALWAYS_LIVE,
  type EtcMergeOptions,
  type EtcMergeReport,
  type EtcChange,
} from './etc-merge.ts';
export {
  planEtcMerge,
  type EtcConflict,
  type EtcConflictKind,
  type EtcMergePlan,
  type EtcSource,
} from './etc-merge-plan.ts';
export {
  scanEtcTree,
  sameEntry,
  ETC_TREE_LIMITS,
  type EtcEntry,
  type EtcTree,
  type EtcTreeLimits,
} from './etc-tree.ts';
export {
  mergeUsers,
  parseUserDb,
  USER_DB_FILES,
  USER_DB_MAX_BYTES,
  type UserDb,
  type UserDbFile,
  type UsersMergeResult,
  type UsersConflict,
} from './passwd-merge.ts';
export { unifiedDiff, DIFF_MAX_LINES } from './etc-line-diff.ts';
export {
  DeployStore,
  firstDifference,
  type CheckoutOptions,
  type DeploymentInfo,
  type GcResult,
} from './deploy-store.ts';
export {
  DirectoryObjectSource,
  objectPath,
  objectEntries,
  type ObjectSource,
} from './deploy-objects.ts';
export type { CheckoutMode } from './deploy-checkout.ts';
export type { SpaceNeeds, StoreUsage } from './deploy-space.ts';
export {
  DEPLOYMENT_ID,
  type DeploymentRecord,
  type DeploymentRelease,
  type DeployState,
} from './deploy-state.ts';
export {
  writeBootEntry,
  removeBootEntry,
  listBootEntries,
  blessEntry,
  setDefaultEntry,
  bootedDeployment,
  ENTRY_PREFIX,
  SORT_KEY,
  type BootDeployment,
  type WriteBootEntryOptions,
  type DeployBootEntry,
} from './deploy-boot.ts';
export { findKernel, MAX_KERNEL_BYTES, type DeploymentKernel } from './deploy-boot-kernel.ts';
export {
  renderGrubDeployments,
  writeGrubDeployments,
  grubSetDefault,
  grubMarkGood,
  readGrubDeployments,
  leftVariable,
  type GrubMenuOptions,
  type GrubDeploymentState,
} from './deploy-boot-grub.ts';
export {
  deployRelease,
  checkDeployable,
  type DeployEvent,
  type DeployReleaseOptions,
  type DeployResult,
} from './deploy-install.ts';
export {
  DirectoryTreeSource,
  signedTree,
  treeImage,
  type SignedTree,
  type TreeSource,
} from './deploy-source.ts';
export { HttpTreeSource, type HttpTreeSourceOptions } from './deploy-http.ts';
export {
  liveEtcPath,
  defaultEtcPath,
  makeEtc,
  removeStaleEtc,
  requireEtc,
  type EtcResult,
} from './deploy-etc.ts';
export {
  DeviceDeployments,
  type DeployStatus,
  type DeploymentStatus,
  type DeployUpdateResult,
  type DeployUpdateEvent,
  type DevicePolicy,
} from './deploy-device.ts';
export { deployBootFor, type DeployBoot } from './deploy-bootloader.ts';
export {
  deployBootCheck,
  type DeployBootCheckEvent,
  type DeployBootCheckResult,
} from './deploy-boot-check.ts';
export { DEPLOY_FAULT_POINTS } from './fault.ts';
export { recoverDeployments, type RecoverResult } from './deploy-recover.ts';
export { deployBundle } from './deploy-bundle.ts';
export {
  FleetSession,
  type FleetCycleOptions,
  type FleetCycleResult,
  type FleetEvent,
} from './fleet.ts';
export { FleetClient, type CheckinAnswer } from './fleet-client.ts';
export {
  inventoryOf,
  loadFleetState,
  AGENT_VERSION,
  type FleetState,
  type FleetAssignment,
} from './fleet-state.ts';
export { directorKeys } from './fleet-keys.ts';
export { grubBootChoice, type GrubBootChoice } from './grub-boot-choice.ts';
export { execKexec, loadKexec, planKexec, type KexecDevice, type KexecPlan } from './kexec.ts';
export { KEXEC_CMDLINE_FIELDS, kexecCmdlineProblem, kexecCommandLine } from './kexec-cmdline.ts';
