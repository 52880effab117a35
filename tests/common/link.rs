//! A TCP link the test can cut: it forwards connections to a broker until `cut`, which
//! closes every open connection and refuses new ones until `restore`. A test that waits
//! for a "reconnecting" state needs it to last until the test has seen it; a reconnect
//! delay with jitter can end it before the test looks.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Link {
    port: u16,
    open: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Link {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the link");
        let port = listener.local_addr().expect("local address").port();
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accepting = (open.clone(), cuts.clone());
        tokio::spawn(async move {
            let (open, cuts) = accepting;
            while let Ok((client, _)) = listener.accept().await {
                // Subscribed before the check, so a cut right after it still closes this one.
                let cut = cuts.subscribe();
                if !open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, target.clone(), cut));
            }
        });
        Self { port, open, cuts }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

async fn forward(mut client: TcpStream, target: String, mut cuts: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {}
    }
}
