export { have, needs, type Capability } from './capabilities.ts';
export { imageLikeBytes, pseudoRandomBytes, tempDir } from './fixtures.ts';
export { startNginx, type Nginx } from './nginx.ts';
export {
  bootloaderConformance,
  type BootloaderFixture,
  type ConformanceOptions,
} from './bootloader-conformance.ts';
export {
  makeDevice,
  readPartitions,
  type DeviceFixture,
  type DeviceFixtureOptions,
  type Partition,
} from './device-fixture.ts';
export { startPostgres, postgresBinDir, type Postgres } from './postgres.ts';
export { treeManifest, type TreeManifestOptions } from './tree-manifest.ts';
