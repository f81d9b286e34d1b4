/** `ferry reboot`: into the slot the bootloader boots next, through the firmware or with kexec. */
import type { AgentEvent } from '@ferry/agent';
import { FerryError } from '@ferry/core';
import { flag, type CommandSpec } from './command.ts';
import { DEVICE_OPTIONS, eventSink, openAgent } from './device-commands.ts';

/** The line a person sees for a reboot event (JSON lines go to the event sink). */
function humanEvent(e: AgentEvent): string | undefined {
  if (e.id === 'reboot.kexec-failed')
    return `kexec failed [${e.code}]: ${e.message}; rebooting through the firmware`;
  if (e.id !== 'reboot.started') return undefined;
  if (e.method === 'firmware') return 'rebooting through the firmware';
  const left = e.attemptsLeft !== undefined ? `, ${e.attemptsLeft} attempts left after this` : '';
  const initrd = e.initrd ? ` initrd ${e.initrd}` : '';
  return `kexec into ${e.bootname} (${e.slot}${left}): ${e.kernel}${initrd} ${e.cmdline}`;
}

export const reboot: CommandSpec = {
  name: 'reboot',
  summary: 'Reboot into the slot the bootloader boots next, through the firmware or with kexec',
  description:
    'Without an option, [system] reboot-method decides (firmware by default); with "kexec" there, a kexec that fails before it starts falls back to a firmware reboot when [kexec] fallback is true. --firmware runs FERRY_REBOOT_COMMAND (default systemctl reboot). --kexec starts the next slot from the running system without firmware and bootloader: the bootloader backend names the slot its boot script would boot and counts the boot attempt as the script would (grub and file backends; others refuse with KEXEC_UNSUPPORTED); the slot image must still hash to the SHA-256 verified at install (IMAGE_HASH_MISMATCH otherwise); it is mounted read-only, nodev, nosuid, noexec, and [kexec] kernel and initrd are loaded from it (FERRY_KEXEC_COMMAND, default kexec, `-l`) with the command line [kexec] cmdline builds for the slot; then the attempt is counted, sync, `kexec -e`. A failure before the count leaves the device unchanged (KEXEC_NO_TARGET, KEXEC_FAILED); --kexec never falls back. Needs root.',
  options: {
    ...DEVICE_OPTIONS,
    kexec: {
      type: 'boolean',
      description: 'start the next slot with kexec, without firmware and bootloader',
    },
    firmware: { type: 'boolean', description: 'reboot through the firmware and the bootloader' },
  },
  json: true,
  examples: [
    'ferry reboot',
    'ferry reboot --kexec',
    'ferry install gw-1.2.0.fbd && ferry reboot --kexec',
  ],
  async run(ctx) {
    if (flag(ctx, 'kexec') && flag(ctx, 'firmware'))
      throw new FerryError('USAGE', '--kexec and --firmware exclude each other');
    const method = flag(ctx, 'kexec') ? 'kexec' : flag(ctx, 'firmware') ? 'firmware' : undefined;
    const agent = await openAgent(ctx);
    const sink = eventSink(ctx);
    // Printed before the jump: nothing runs after a successful `kexec -e`.
    await agent.reboot({
      ...(method ? { method } : {}),
      onEvent: (e) => {
        if (sink) sink(e);
        else {
          const line = humanEvent(e);
          if (line) ctx.out.stdout.write(`${line}\n`);
        }
      },
    });
    ctx.out.result({ rebooting: true }, () => 'reboot requested');
  },
};
