// The seed's "Basic Usage" example as written, with its imports added, then a look at the result.
import { EventBus, TaskManager, TaskRepository } from "@taskstore/core";

const eventBus = new EventBus();
const repository = new TaskRepository();
// Said before anything is written: this is your real store unless TASKSTORE_URL names another.
const where = (await repository.getDriver().then((driver) => driver.describe?.()))?.location ?? "the default store";
console.log(
  `This demo writes one task into ${where}${process.env.TASKSTORE_URL ? " (TASKSTORE_URL)" : " (your default store; set TASKSTORE_URL to use another)"}.`,
);
const taskManager = new TaskManager(eventBus, repository);

// Load existing tasks
await taskManager.loadFromRepository();

// Create a task (automatically persisted)
const taskId = await taskManager.create({
  title: "Build feature",
  description: "Add new persistence layer",
});

// Update task (automatically persisted)
await taskManager.update(taskId, {
  title: "Build awesome feature",
});

const diagnostics = await repository.diagnose();
await taskManager.close();
console.log(`Created and updated task ${taskId}.`);
console.log(`The store at ${diagnostics.description?.location ?? "(unknown)"} now holds ${diagnostics.taskCount} task(s).`);
