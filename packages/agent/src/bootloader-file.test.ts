import { bootloaderConformance, tempDir } from '@ferry/testing';
import { FileBootloader } from './bootloader-file.ts';

bootloaderConformance({
  name: 'file',
  reportsAttempts: true,
  async make() {
    const { dir, cleanup } = await tempDir('ferry-bl-file-');
    const make = () =>
      new FileBootloader({
        root: dir,
        bootnames: ['A', 'B'],
        options: { path: '/boot.json' },
        attempts: 3,
      });
    const bootloader = make();
    return {
      bootloader,
      // The model itself is the "bootloader side" of this backend.
      boot: () => bootloader.boot(),
      reopen: () => Promise.resolve(make()),
      cleanup,
    };
  },
});
