fn main() -> std::process::ExitCode {
    cordon_collector::cli::main()
}
