/** What `fs.stat` / `lstat` tell of a path's kind (plain or BigInt stats). */
export interface FileTypeStats {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
  isSymbolicLink(): boolean;
}

/**
 * What a path that is not a regular file is, for messages ("... is a FIFO, not a regular file"):
 * a store path must be a regular file, and a FIFO or a device is refused before it is opened.
 */
export function fileTypeOf(stats: FileTypeStats): string {
  if (stats.isDirectory()) return "a folder";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSocket()) return "a socket";
  if (stats.isSymbolicLink()) return "a symlink";
  return "an unknown kind of file";
}
