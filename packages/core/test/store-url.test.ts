import { parseStoreUrl, redactText, redactUrl } from "@taskstore/core";
import { describe, expect, it } from "vitest";

const cwd = "/work/dir";
const home = "/home/me";
const parse = (url: string | undefined) => parseStoreUrl(url, cwd, home);

describe("parseStoreUrl", () => {
  it("no URL is the JSON file driver at its default path (no path option)", () => {
    const spec = parse(undefined);
    expect(spec).toMatchObject({
      kind: "file",
      packageName: "@taskstore/driver-json-file",
      exportName: "JSONFileStorageDriver",
      options: {},
    });
    expect(parse("").options).toEqual({});
  });

  it("file: takes an absolute, relative, ~ or file:/// path", () => {
    expect(parse("file:/abs/tasks.json").options).toEqual({ path: "/abs/tasks.json" });
    expect(parse("file:./rel/tasks.json").options).toEqual({ path: "/work/dir/rel/tasks.json" });
    expect(parse("file:rel.json").options).toEqual({ path: "/work/dir/rel.json" });
    expect(parse("file:~/t.json").options).toEqual({ path: "/home/me/t.json" });
    expect(parse("file:///abs/my%20tasks.json").options).toEqual({ path: "/abs/my tasks.json" });
    expect(parse("file://localhost/abs/t.json").options).toEqual({ path: "/abs/t.json" });
  });

  it("a bare path without a scheme is a JSON file", () => {
    expect(parse("/abs/tasks.json")).toMatchObject({ kind: "file", options: { path: "/abs/tasks.json" }, display: "file:/abs/tasks.json" });
    expect(parse("tasks.json").options).toEqual({ path: "/work/dir/tasks.json" });
  });

  it("file: with a remote host or no path is refused", () => {
    expect(() => parse("file://server/share/t.json")).toThrow(/must be local/);
    expect(() => parse("file:")).toThrow(/has no path/);
  });

  it("sqlite: maps to the SQLite driver with the same path forms", () => {
    expect(parse("sqlite:/var/db/tasks.db")).toMatchObject({
      kind: "sqlite",
      packageName: "@taskstore/driver-sqlite",
      exportName: "SQLiteStorageDriver",
      options: { path: "/var/db/tasks.db" },
    });
    expect(parse("sqlite:///var/db/t.db").options).toEqual({ path: "/var/db/t.db" });
    expect(parse("SQLITE:db.sqlite").options).toEqual({ path: "/work/dir/db.sqlite" });
  });

  it("redis: and rediss: pass the URL to ioredis with the prefix taken out", () => {
    const spec = parse("redis://user:pw@127.0.0.1:6390/2?prefix=agent-1");
    expect(spec).toMatchObject({ kind: "redis", packageName: "@taskstore/driver-redis", exportName: "RedisStorageDriver" });
    expect(spec.options).toEqual({ url: "redis://user:pw@127.0.0.1:6390/2", prefix: "agent-1" });
    expect(spec.display).toBe("redis://user:***@127.0.0.1:6390/2?prefix=agent-1");
    expect(parse("rediss://h:6380").options).toEqual({ url: "rediss://h:6380" });
  });

  it("a redis database that is not a number is refused", () => {
    expect(() => parse("redis://h:6379/tasks")).toThrow(/is a number/);
  });

  it("s3: takes bucket, prefix and client settings; credentials come from the environment only", () => {
    const spec = parse("s3://my-bucket/agents/one?endpoint=http://127.0.0.1:7480&region=eu-west-1&forcePathStyle=true");
    expect(spec).toMatchObject({ kind: "s3", packageName: "@taskstore/driver-s3", exportName: "S3StorageDriver" });
    expect(spec.options).toEqual({
      bucket: "my-bucket",
      prefix: "agents/one",
      endpoint: "http://127.0.0.1:7480",
      region: "eu-west-1",
      forcePathStyle: true,
    });
    expect(parse("s3://b").options).toEqual({ bucket: "b" });
    expect(() => parse("s3://key:secret@bucket/p")).toThrow(/AWS_ACCESS_KEY_ID/);
  });

  it("postgres: and postgresql: become a connection string with the schema taken out", () => {
    const spec = parse("postgres://agent:pw@db.local:5433/work?schema=team_a&sslmode=require");
    expect(spec).toMatchObject({ kind: "postgres", packageName: "@taskstore/driver-postgres", exportName: "PostgresStorageDriver" });
    expect(spec.options).toEqual({ connectionString: "postgres://agent:pw@db.local:5433/work?sslmode=require", schema: "team_a" });
    expect(spec.display).not.toContain("pw");
    expect(parse("postgresql://u@h/db").kind).toBe("postgres");
  });

  it("an unknown scheme is a usage error listing the supported ones", () => {
    expect(() => parse("mongodb://h/db")).toThrow(/unknown store scheme "mongodb:".*file: sqlite: redis: rediss: s3: postgres:/);
  });
});

describe("redaction", () => {
  it("masks passwords in URLs and in free text, keeping the user", () => {
    expect(redactUrl("redis://:s3cret@h:1/0")).toBe("redis://:***@h:1/0");
    expect(redactUrl("postgres://u:p%40ss@h/db?password=x")).toBe("postgres://u:***@h/db?password=***");
    expect(redactText("connect to redis://admin:hunter2@10.0.0.1:6379 failed")).toBe("connect to redis://admin:***@10.0.0.1:6379 failed");
    expect(redactUrl("file:/a/b.json")).toBe("file:/a/b.json");
  });
});
