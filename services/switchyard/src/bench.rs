//! `switchyard bench`: throughput figures, each against a baseline measured
//! in the same run on the same machine.

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet (brokers {})", args.brokers)
}
