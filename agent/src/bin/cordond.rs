fn main() -> std::process::ExitCode {
    cordon::daemon::main()
}
