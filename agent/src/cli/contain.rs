//! The responders' commands: `cordon ps` and `cordon kill|freeze|thaw|isolate|release`.
//!
//! Through cordond when it runs (so the action is authorized by the caller's groups and
//! recorded with who asked); as root without it, directly on the kernel.

use std::process::ExitCode;

use crate::api::client::Client;
use crate::api::Request;
use crate::contain::{self, SandboxInfo};
use crate::event::Action;

use super::Output;

/// `cordon ps`: every sandbox with its state and process count.
pub fn ps(daemon: Option<Client>, out: Output) -> ExitCode {
    let list = match daemon {
        Some(mut client) => client
            .call(&Request::Ps(Default::default()))
            .map_err(|e| e.to_string())
            .and_then(|v| {
                serde_json::from_value::<Vec<SandboxInfo>>(v["sandboxes"].clone())
                    .map_err(|e| format!("cordond sent an unreadable list: {e}"))
            }),
        None => contain::list(crate::ebpf::Kernel::open().ok().as_ref()),
    };
    let list = match list {
        Ok(l) => l,
        Err(e) => return super::fail(&e, 1),
    };
    if out.json {
        return super::print_json(&list);
    }
    println!(
        "{:<40} {:>6} {:<8} {:<9} {:<12} SESSION",
        "SANDBOX", "PROCS", "STATE", "NETWORK", "USER"
    );
    for s in list {
        let user = s
            .uid
            .map(|uid| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map_or_else(|| uid.to_string(), |u| u.name)
            })
            .unwrap_or_default();
        let session = s.session.map(|id| id.to_string()).unwrap_or_default();
        println!(
            "{:<40} {:>6} {:<8} {:<9} {user:<12} {session}",
            s.name, s.procs, s.state, s.network
        );
    }
    ExitCode::SUCCESS
}

/// `cordon kill|freeze|thaw|isolate|release SANDBOX`.
pub fn act(daemon: Option<Client>, name: &str, action: Action, out: Output) -> ExitCode {
    let took_ms = match daemon {
        Some(mut client) => client
            .call(&Request::Act {
                sandbox: name.to_string(),
                action,
            })
            .map(|v| v["took_ms"].as_u64().unwrap_or(0))
            .map_err(|e| e.to_string()),
        None => contain::act(crate::ebpf::Kernel::open().ok().as_ref(), name, action)
            .map(|took| took.as_millis() as u64)
            .map_err(|e| format!("{name}: {e}")),
    };
    match took_ms {
        Ok(ms) if out.json => super::print_json(&serde_json::json!({
            "sandbox": name, "action": action, "result": contain::done(action), "took_ms": ms
        })),
        Ok(ms) => {
            println!("{name}: {} ({ms} ms)", contain::done(action));
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e, 1),
    }
}
