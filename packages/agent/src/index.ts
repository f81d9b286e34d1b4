export * from './bootloader.ts';
export { FileBootloader, bootModel } from './bootloader-file.ts';
