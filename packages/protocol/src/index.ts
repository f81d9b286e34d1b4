/** Wire types and schemas shared by the agent, the server and the dashboard. */
export const PROTOCOL_VERSION = 1;
