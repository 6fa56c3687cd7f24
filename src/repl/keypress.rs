//! Pausing a running `lt fit` from the keyboard: when stdin is a terminal, a thread waits for the
//! user to press Enter and raises a flag; the module checks it at the next step boundary and opens
//! the REPL there (see [`super::pause::pause_run`]). While a REPL has the terminal (this one, or a
//! `breakpoint()`), the thread is parked, so it never takes the REPL's input. It reads only while
//! the process is in the terminal's foreground (a job in the background must not be stopped by
//! SIGTTIN for reading it).
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct Shared {
    /// (the REPL wants stdin, the thread has stopped reading)
    park: Mutex<(bool, bool)>,
    cv: Condvar,
    requested: AtomicBool,
    stop: AtomicBool,
    /// The thread is running.
    alive: AtomicBool,
}

/// The running watcher, for [`park_current`].
static CURRENT: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

pub struct KeyWatcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// While alive, the watcher does not read stdin.
pub struct Parked(Arc<Shared>);

/// Stops the running watcher, if any, from reading stdin until the guard is dropped (a REPL takes
/// the terminal); waits for it to let go.
pub fn park_current() -> Option<Parked> {
    let shared = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    Some(park(shared))
}

fn park(shared: Arc<Shared>) -> Parked {
    {
        let mut g = shared.park.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = true;
        shared.cv.notify_all();
        while !g.1 && shared.alive.load(Ordering::SeqCst) {
            g = shared.cv.wait_timeout(g, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
    Parked(shared)
}

/// Whether this process is in the terminal's foreground process group.
fn in_foreground() -> bool {
    // SAFETY: plain queries of the process group ids.
    unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

impl KeyWatcher {
    /// Starts watching when stdin and stdout are a terminal (the REPL must be seen) and
    /// `LT_PAUSE_KEY` is not `off`.
    pub fn start() -> Option<KeyWatcher> {
        let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if !terminal || std::env::var("LT_PAUSE_KEY").is_ok_and(|v| v == "off") {
            return None;
        }
        let shared = Arc::new(Shared::default());
        shared.alive.store(true, Ordering::SeqCst);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lt-pause-key".into())
            .spawn(move || {
                watch(&s);
                s.alive.store(false, Ordering::SeqCst);
                s.cv.notify_all();
            })
            .ok()?;
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared.clone());
        Some(KeyWatcher { shared, thread: Some(thread) })
    }

    /// Whether Enter was pressed since the last call.
    pub fn take_request(&self) -> bool {
        self.shared.requested.swap(false, Ordering::SeqCst)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut g = self.0.park.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = false;
        self.0.cv.notify_all();
    }
}

impl Drop for KeyWatcher {
    fn drop(&mut self) {
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.shared)) {
            *current = None;
        }
        drop(current);
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(s: &Shared) {
    let mut buf = [0u8; 1024];
    while !s.stop.load(Ordering::SeqCst) {
        {
            let mut g = s.park.lock().unwrap_or_else(|e| e.into_inner());
            if g.0 {
                g.1 = true;
                s.cv.notify_all();
                while g.0 && !s.stop.load(Ordering::SeqCst) {
                    g = s.cv.wait_timeout(g, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
                }
                g.1 = false;
                continue;
            }
        }
        if !in_foreground() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut fds = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fds, 1, 100) };
        if ready <= 0 || fds.revents & libc::POLLIN == 0 {
            if fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                return;
            }
            continue;
        }
        // A terminal in canonical mode hands over one line per read.
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        s.requested.store(true, Ordering::SeqCst);
    }
}
