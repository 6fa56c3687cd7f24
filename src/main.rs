fn main() -> std::process::ExitCode {
    lt::cli::main()
}
