//! The emulator's processes: the gateway and its `emulator_main` child, killed
//! together (and only ours) when dropped.

use super::*;

/// The gateway and what is known of its child; killed when dropped, so an
/// abandoned start (an error, a cancelled future) leaves nothing behind.
#[derive(Debug)]
pub(super) struct Processes {
    /// `gateway_main`, leader of its own process group.
    pub(super) gateway: Child,
    /// Set once [`kill`](Self::kill) has run.
    pub(super) killed: bool,
    /// Set once `gateway` has been reaped, after which only its group id may
    /// be used.
    pub(super) gateway_reaped: bool,
    /// `emulator_main`, once identified.
    pub(super) emulator_pid: Option<u32>,
    /// The gRPC port, to recognise our `emulator_main` by its command line.
    pub(super) grpc_port: u16,
}

impl Processes {
    /// Kills the gateway's process group, reaps the gateway, and waits
    /// until no member of the group runs.
    pub(super) fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        let group = self.gateway.id();
        if !self.gateway_reaped {
            if self.emulator_pid.is_none() {
                self.emulator_pid = find_emulator(group);
            }
            if let Some(pid) = self.emulator_pid {
                Self::kill_emulator_first(group, pid);
            }
        }
        // The group id stays reserved while the unreaped gateway or any
        // member exists, so it cannot name someone else's processes.
        if let Err(error) = process::kill_group(group) {
            tracing::debug!(group, %error, "could not kill the emulator's process group");
        }
        if !self.gateway_reaped {
            process::kill_and_reap(&mut self.gateway);
            self.gateway_reaped = true;
        }

        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut survivors = self.survivors(group);
        while !survivors.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            survivors = self.survivors(group);
        }
        for pid in survivors {
            if self.serves_our_port(pid)
                && process::kill_pid(pid).is_ok()
                && process::wait_until_gone(pid, STOP_TIMEOUT)
            {
                continue;
            }
            tracing::warn!(pid, "an emulator process survived SIGKILL");
        }
    }

    /// True when `pid` was started with our gRPC address
    /// (`--host_port 127.0.0.1:<port>`), so it is our `emulator_main` and not
    /// a process that reused its id.
    pub(super) fn serves_our_port(&self, pid: u32) -> bool {
        let address = format!("127.0.0.1:{}", self.grpc_port);
        process::command_line(pid)
            .is_some_and(|args| args.iter().any(|arg| arg.ends_with(&address)))
    }

    /// Kills `emulator_main` while the gateway still runs, so that the
    /// gateway reaps it. Killed together, `emulator_main` would be left to
    /// the init process, and stays a zombie where init does not reap (as in
    /// some containers).
    pub(super) fn kill_emulator_first(gateway: u32, pid: u32) {
        let child_of_gateway = |pid| process::stat(pid).is_some_and(|stat| stat.ppid == gateway);
        if !child_of_gateway(pid) || process::kill_pid(pid).is_err() {
            return;
        }
        let deadline = Instant::now() + REAP_TIMEOUT;
        while child_of_gateway(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Running processes still in the gateway's group, plus the emulator if
    /// it left the group.
    pub(super) fn survivors(&self, group: u32) -> Vec<u32> {
        let mut pids = process::group_members(group);
        if let Some(pid) = self.emulator_pid
            && !pids.contains(&pid)
            && process::is_running(pid)
            && self.serves_our_port(pid)
        {
            pids.push(pid);
        }
        pids
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `emulator_main` child of `gateway`: the child named `emulator_main`,
/// else the only child.
pub(super) fn find_emulator(gateway: u32) -> Option<u32> {
    let children = process::children(gateway);
    children
        .iter()
        .copied()
        .find(|&pid| process::command_name(pid).as_deref() == Some("emulator_main"))
        .or(match children.as_slice() {
            [only] => Some(*only),
            _ => None,
        })
}
