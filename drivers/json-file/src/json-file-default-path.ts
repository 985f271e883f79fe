import os from "node:os";
import path from "node:path";

/**
 * Where the store lives when no path is given: `~/.config/kilocode/tasks.json`, under
 * `$XDG_CONFIG_HOME` when it is set (and absolute, as the XDG spec requires), under `%APPDATA%`
 * on Windows. Read from the environment at each call, so a changed `HOME` is seen.
 */
export function defaultStorePath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const home = env.HOME || os.homedir();
  let base: string;
  if (platform === "win32") base = env.APPDATA || path.join(env.USERPROFILE || home, "AppData", "Roaming");
  else base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(home, ".config");
  return path.join(base, "kilocode", "tasks.json");
}
