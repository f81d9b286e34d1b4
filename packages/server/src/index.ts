/** The fleet server. */
export {};
