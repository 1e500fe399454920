/** Public API of the PyTorch checkpoint reader/writer (see the individual modules for details). */
export * from './errors.js';
export * from './tensor.js';
export { PyObject, PyOrderedDict, SkippedTensor, isTuple, tuple, unpickle, opcodeName } from './pickle.js';
export type { PyDict, PyValue, PyGlobal, PickleHooks, PyExtension } from './pickle.js';
export { PyNamespace, PendingTensor, torchHooks } from './torch.js';
export type { StorageRef, TorchHookOptions } from './torch.js';
export { loadCheckpoint, loadCheckpointWithInfo, keyString } from './read.js';
export type { LoadOptions, LoadedCheckpoint, CheckpointFormat } from './read.js';
export { stateDict, getPath, pyToJSON, StateDictError } from './statedict.js';
export { saveCheckpoint, pickleCheckpoint, PyFloat, CheckpointWriteError } from './write.js';
export type { SaveValue, SaveKey, SaveOptions } from './write.js';
export { ZipReader, ZipWriter, crc32, crc32Table } from './zip.js';
export type { ZipEntry } from './zip.js';
