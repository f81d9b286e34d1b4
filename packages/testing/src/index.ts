export { have, needs, type Capability } from './capabilities.ts';
