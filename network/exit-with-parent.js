// Preloaded (`node -r`) into every process the local network harness spawns: when the process that spawned
// it is gone (a test run killed, a demo interrupted), the child stops too instead of living on as an orphan
// holding ports and CPU. OPG_EXIT_WITH_PARENT holds the spawning process's pid; without it this does nothing.
"use strict";
/* global setInterval, clearInterval, setTimeout -- Node timers */

const parent = Number(process.env.OPG_EXIT_WITH_PARENT);
// Not for this process's own children (an inference node's provers inherit `-r` through execArgv): they
// have their own parent to follow.
delete process.env.OPG_EXIT_WITH_PARENT;
if (Number.isInteger(parent) && parent > 1) {
  const alive = () => {
    try {
      process.kill(parent, 0);
      return process.ppid === parent;
    } catch {
      return false;
    }
  };
  const timer = setInterval(() => {
    if (alive()) return;
    clearInterval(timer);
    // SIGTERM first, so a node shuts down as it would under a supervisor; a hard exit if that hangs.
    setTimeout(() => process.exit(1), 10_000).unref();
    process.kill(process.pid, "SIGTERM");
  }, 1000);
  timer.unref();
}
