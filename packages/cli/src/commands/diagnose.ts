import { hostname } from "node:os";
import { type Diagnostics, type OperationStats, redactText, type StoredError } from "@taskstore/core";
import { type Command, output, withStore } from "../command.js";
import { formatBytes, formatTime } from "../render.js";
import { escapeText } from "../text.js";

type Report = { store: string } & Diagnostics;

export const diagnose: Command = {
  name: "diagnose",
  summary: "what the store is and how it is doing (--persistence)",
  usage: "diagnose [--persistence]",
  details: `Prints the store, driver and capabilities, location and size, last backup, schema version,
task count, who holds the lock (pid and host for json-file), this run's operations (counts,
latencies, rates), and the recent errors of every process that used the store, newest first,
each with its pid and host: taskstore records storage errors with the store (the newest 50,
credentials masked), written with the next write that succeeds. Credentials never appear.
Exit 0 whenever the report could be made, even for a broken store: read "recentErrors".
--json prints the report as one object (see the README).`,
  options: { persistence: { type: "boolean", description: "the persistence report (the default, and today the only one)" } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const report = await withStore(ctx, async (store) => {
      const diagnostics = await store.repository.diagnose();
      return redactDeep({ store: store.display, ...diagnostics }) as Report;
    });
    const rows: [string, string][] = [
      ["store", report.store],
      ["driver", report.driver],
      ["capabilities", capabilityList(report)],
      ["location", typeof report.description?.location === "string" ? report.description.location : "(not reported)"],
      ["size", report.description?.sizeBytes !== undefined ? formatBytes(report.description.sizeBytes) : "(not reported)"],
      ["last backup", lastBackup(report)],
      ["schema version", report.schemaVersion ?? "(unknown: the store could not be read)"],
      ["tasks", report.taskCount !== undefined ? String(report.taskCount) : "(unknown)"],
      ["lock", lockHolder(report)],
      ["pending changes", String(report.metrics.pendingChanges)],
    ];
    const width = Math.max(...rows.map(([key]) => key.length), "recent errors".length);
    const lines = rows.map(([key, value]) => `${key.padEnd(width)}  ${escapeText(value)}`);
    lines.push(...operationLines(report, width));
    const errors = errorList(report);
    lines.push(`${"recent errors".padEnd(width)}  ${errors.length === 0 ? "none" : `${errors.length}, newest first`}`);
    for (const error of errors) {
      const who = `pid ${error.pid}${error.pid === process.pid ? " (this run)" : ""} on ${error.host || "?"}`;
      lines.push(
        `  ${formatTime(error.at)} ${escapeText(`${error.code} (${error.operation}) ${who}: ${error.message.replace(/\s*\n\s*/g, " ")}`)}`,
      );
    }
    output(ctx, lines.join("\n"), report);
  },
};

function capabilityList(report: Report): string {
  const on = Object.entries(report.capabilities)
    .filter(([, value]) => value)
    .map(([name]) => name);
  return on.join(", ") || "none";
}

function lockHolder(report: Report): string {
  const holder = report.description?.lockHolder;
  if (holder === null) return "free";
  if (!holder) return "(not reported)";
  const pid = holder.pid !== undefined ? ` by pid ${holder.pid}` : "";
  const host = holder.host ? ` on ${holder.host}` : "";
  const since = holder.since ? ` since ${formatTime(holder.since)}` : "";
  return `held${pid}${host}${since}`;
}

function lastBackup(report: Diagnostics): string {
  if (!report.capabilities.backup) return "(backups not supported)";
  const at = report.description?.lastBackupAt ?? report.metrics.lastBackupAt;
  if (at !== undefined) return formatTime(at);
  return report.description ? "never" : "(unknown: the store could not be reached)";
}

/** This run's operations that happened: count, failures, latencies and rates (the same numbers as `metrics` in --json). */
function operationLines(report: Report, width: number): string[] {
  const done = Object.entries(report.metrics.operations).filter(([, stats]) => stats.count > 0);
  if (done.length === 0) return [`${"operations".padEnd(width)}  none in this run`];
  const header = ["count", "failed", "p50", "p95", "max", "rate", "last min"];
  const table = done.map(([name, stats]) => [name, ...operationCells(stats)]);
  const widths = header.map((title, i) => Math.max(title.length, ...table.map((row) => (row[i + 1] as string).length)));
  const cells = (values: string[]) => values.map((value, i) => value.padStart(widths[i] as number)).join("  ");
  return [
    `${"operations".padEnd(width)}  ${cells(header)}  (this run)`,
    ...table.map(([name, ...values]) => `  ${(name as string).padEnd(width - 2)}  ${cells(values as string[])}`),
  ];
}

function operationCells(stats: OperationStats): string[] {
  return [
    String(stats.count),
    String(stats.errors),
    formatMs(stats.p50Ms),
    formatMs(stats.p95Ms),
    formatMs(stats.maxMs),
    formatRate(stats.ratePerSec),
    formatRate(stats.recentRatePerSec),
  ];
}

function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2)} ms`;
}

function formatRate(perSec: number): string {
  return `${perSec >= 100 ? perSec.toFixed(0) : perSec >= 10 ? perSec.toFixed(1) : perSec.toFixed(2)}/s`;
}

/**
 * The errors to show, newest first: the store's record of every process's storage errors, plus
 * what this run met that the store does not record (a driver's warning, say).
 */
function errorList(report: Report): StoredError[] {
  const host = hostname();
  const listed = new Set(report.recentErrors.filter((error) => error.pid === process.pid).map((error) => `${error.at}|${error.code}`));
  const own = report.metrics.recentErrors
    .filter((error) => !listed.has(`${error.at}|${error.code}`))
    .map((error) => ({ ...error, pid: process.pid, host }));
  return [...report.recentErrors, ...own].sort((a, b) => b.at - a.at);
}

/** Every string in the report, with URL passwords masked: drivers and errors may quote a URL. */
function redactDeep(value: unknown): unknown {
  if (typeof value === "string") return redactText(value);
  if (Array.isArray(value)) return value.map(redactDeep);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, /password|secret|token/i.test(key) ? "***" : redactDeep(item)]),
    );
  }
  return value;
}
