/// The stack lt runs on: deep enough for Rhai's call-depth limit (512 levels) at every level of
/// script code nested through lt's own functions (`script::reentry`), so deep scripts end in a
/// script error, never a stack overflow. Reserved address space; only what is used is touched.
const STACK_BYTES: usize = 512 << 20;

fn main() -> std::process::ExitCode {
    match std::thread::Builder::new().name("lt".into()).stack_size(STACK_BYTES).spawn(lt::cli::main) {
        Ok(t) => t.join().unwrap_or(std::process::ExitCode::from(101)),
        Err(e) => {
            eprintln!("error: cannot start lt's main thread: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
