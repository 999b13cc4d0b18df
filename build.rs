// sqlx::migrate! embeds migrations/ at compile time; without this, editing a migration alone
// would not rebuild the crate and the binary would keep the old text.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
