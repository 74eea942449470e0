//! `db`: the database command line. Migrations (`create`, `up`, `down`, `reset`, `status`),
//! development data (`seed`), and backups (`backup`, `restore`, `drill`), against `DATABASE_URL`.

mod backups;

use anyhow::Context;
use clap::{Parser, Subcommand};
use local::migrations_dir;
use migrator::{Migrator, State};
use platform::{
    config::Config,
    db::{self, PoolSettings},
};

#[derive(Parser)]
#[command(name = "db", about = "Database migrations and development data")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write an empty NNNN_NAME.up.sql / .down.sql pair.
    Create { name: String },
    /// Apply every pending migration.
    Up,
    /// Revert the last N applied migrations (default 1).
    Down {
        #[arg(default_value_t = 1)]
        n: usize,
    },
    /// Revert every migration, then apply them all again.
    Reset,
    /// List migrations and whether each is applied.
    Status,
    /// Insert the development users (idempotent).
    Seed,
    /// Create the database named in DATABASE_URL if it does not exist.
    CreateDatabase,
    /// Take a logical backup: to BACKUP_BUCKET under backups/YYYY/MM/DD/, or to a local file.
    Backup(backups::BackupArgs),
    /// Restore a backup into an empty database, and check it against its manifest.
    Restore(backups::RestoreArgs),
    /// Restore the newest backup in BACKUP_BUCKET into a scratch database, check it, drop it.
    Drill(backups::DrillArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(err) = run(Cli::parse().command).await {
        eprintln!("db: {err:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let dir = migrations_dir();
    if let Command::Create { name } = &command {
        let path = migrator::create(&dir, name)?;
        println!("created {}", path.display());
        return Ok(());
    }
    let config = Config::from_env()?;
    platform::install_crypto_provider();
    let settings = PoolSettings::from_config(&config);
    match command {
        Command::Backup(args) => return backups::backup(&config, args).await,
        Command::Restore(args) => return backups::restore(&config, args).await,
        Command::Drill(args) => return backups::drill(&config, args).await,
        _ => {}
    }
    if let Command::CreateDatabase = command {
        let created = db::ensure_database(&config.database_url, &settings).await?;
        println!(
            "{}",
            if created {
                "database created"
            } else {
                "database already exists"
            }
        );
        return Ok(());
    }
    let mut conn = db::connect_once(&config.database_url, &settings).await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    let migrator = Migrator::from_dir(&dir)?;
    match command {
        Command::Up => report("applied", &migrator.up(client).await?),
        Command::Down { n } => report("reverted", &migrator.down(client, n).await?),
        Command::Reset => report("applied", &migrator.reset(client).await?),
        Command::Status => {
            for s in migrator.status(client).await? {
                let state = match s.state {
                    State::Applied(at) => format!("applied {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                    State::Pending => "pending".into(),
                    State::Changed => "CHANGED since it was applied".into(),
                    State::Missing => "applied, but its file is missing".into(),
                };
                println!("{:04}_{:<40} {state}", s.version, s.name);
            }
        }
        Command::Seed => {
            // The seeded accounts' passwords are in the README: never in a deployed database.
            if config.app_env.is_deployed() {
                anyhow::bail!("db seed only runs with APP_ENV development or test");
            }
            let n = local::seed::seed(client).await.context("seeding")?;
            println!("seeded {n} users");
        }
        Command::Create { .. }
        | Command::CreateDatabase
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::Drill(_) => unreachable!("handled above"),
    }
    Ok(())
}

fn report(verb: &str, names: &[String]) {
    if names.is_empty() {
        println!("nothing to do");
    }
    for name in names {
        println!("{verb} {name}");
    }
}
