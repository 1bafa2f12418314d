//! The demo's controls: its console, the stores' link it opens and closes, and HQ's
//! export job it runs every minute.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::feeds::Feed;
use crate::hub::{HubState, db};

pub const CONSOLE_HELP: &str = "\
Console (type a command, then Enter):
  down      take the hub away from every store (their link refuses connections);
            the fleet page stays up: watch stores go silent, trading on offline
  up        bring it back: watch them return, drain their backlogs, turn OK
  db down   stop PostgreSQL hard instead (the hub answers 503 with a Retry-After)
  db up     start it again
  status    what the stores' link and the virtual stores are doing";

/// Console lines, read on a thread of their own: a blocked read of stdin must not hold
/// the runtime's shutdown. Ends when stdin does.
pub fn console() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line.trim().to_lowercase()).is_err() {
                return;
            }
        }
    });
    rx
}

/// HQ's export job: every minute it imports what changed in each feed, here nothing (an
/// empty file), which keeps the feeds' `as_of` current, as a real scheduled export would.
pub async fn hq_export(url: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HQ_EXPORT_EVERY) => {}
            _ = stop.changed() => return,
        }
        let done = async {
            let mut client = db::connect(&url).await?;
            for feed in Feed::ALL {
                crate::hub::feeds::import(&mut client, feed, &b""[..]).await?;
            }
            anyhow::Ok(())
        };
        if let Err(e) = done.await {
            tracing::warn!(error = %e, "demo HQ export: import failed; retrying next minute");
        }
    }
}

const HQ_EXPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The hub as the demo's stores reach it: a listener of its own on a fixed address, closed
/// and opened again from the console.
pub struct StoresLink {
    state: HubState,
    pub addr: SocketAddr,
    serving: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

impl StoresLink {
    pub async fn open(state: HubState, addr: SocketAddr) -> anyhow::Result<StoresLink> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let mut link = StoresLink {
            state,
            addr: listener.local_addr()?,
            serving: None,
        };
        link.serve(listener);
        Ok(link)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::hub::launch(
            self.state.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        self.serving = Some((tx, task));
    }

    pub fn is_open(&self) -> bool {
        self.serving.is_some()
    }

    pub async fn reopen(&mut self) -> anyhow::Result<()> {
        if self.serving.is_none() {
            let listener = TcpListener::bind(self.addr).await?;
            self.serve(listener);
        }
        Ok(())
    }

    /// Stops accepting at once; requests in flight get a few seconds to finish, then their
    /// connections are cut.
    pub async fn close(&mut self) {
        if let Some((tx, mut task)) = self.serving.take() {
            let _ = tx.send(());
            if tokio::time::timeout(std::time::Duration::from_secs(3), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}
