fn main() -> std::process::ExitCode {
    inlet_host::cli::main()
}
