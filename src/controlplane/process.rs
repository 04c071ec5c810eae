//! A child process in its own process group, stopped with SIGTERM then SIGKILL.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::Error;

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub(super) struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    /// Starts `binary` with `args`, output appended to `log`. The child gets its
    /// own process group (so stopping it reaches everything it started) and is
    /// sent SIGTERM by the kernel if the thread that started it ends, so a killed
    /// test run leaves no orphaned servers behind.
    pub(super) fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self, Error> {
        let out = std::fs::File::create(log).map_err(|e| Error::io(log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        #[allow(unsafe_code)]
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
        Ok(Self { name, child })
    }

    /// Whether the process has exited; `Some` carries its status.
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    /// SIGTERM to the group, wait, then SIGKILL. Safe to call twice.
    pub(super) fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(
            process = self.name,
            "did not stop after SIGTERM; killing it"
        );
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
