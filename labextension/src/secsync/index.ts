/**
 * secsync-jupyter: a TypeScript implementation of the Secsync protocol (version 1,
 * wire-compatible with the reference `secsync` 0.5 packages) plus a Yjs sync client.
 * See shared/protocol.md for the wire format, engine.ts for the sans-IO sync engine and
 * document.ts for its browser driver (SecsyncYjsClient).
 */
export * from './errors';
export * from './base64';
export * from './sodium';
export * from './canonical';
export * from './crypto';
export * from './types';
export * from './parse';
export * from './snapshot';
export * from './update';
export * from './ephemeral';
export * from './yjsContent';
export * from './sharelink';
export * from './engine'; // with ./engineCore
export * from './awareness';
export * from './document';
export * from './engineHeads'; // issue 13: heads between collaborators, remembered state
export * from './rememberedState';
export * from './headsDriver';
