//! `cordon`: the command line for profile authors, responders and ops. See `cordon --help`.

fn main() -> std::process::ExitCode {
    cordon::cli::main()
}
