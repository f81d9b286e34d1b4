import { bootloaderConformance, tempDir } from '@ferry/testing';
import { bootModel, FileBootloader } from './bootloader-file.ts';

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
      async boot() {
        // The model itself is the "bootloader side" of this backend.
        const s = await bootloader.read();
        const booted = bootModel(s);
        await bootloader.write(s);
        return booted;
      },
      reopen: () => Promise.resolve(make()),
      cleanup,
    };
  },
});
