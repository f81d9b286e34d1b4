/** QEMU real-boot tests: disk images, kernels, scenarios. Test-only package. */
export {};
