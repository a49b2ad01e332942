fn main() -> std::process::ExitCode {
    verifier::cli::main()
}
