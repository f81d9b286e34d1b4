/** Wire types and schemas shared by the agent, the server and the dashboard. */
export const PROTOCOL_VERSION = 1;
export { ProtocolError, type ProtocolErrorCode } from './errors.ts';
export {
  canonicalJson,
  canonicalBytes,
  preAuthEncoding,
  fromBase64,
  fromHex,
} from './canonical.ts';
export * from './device-auth.ts';
export * from './schemas.ts';
export * from './director.ts';
export * from './admin-api.ts';
