//! The README's environment table lists exactly core's variables, with their older names.

use vlexivo_core::envvars::ALL;

#[test]
fn readme_lists_every_variable_and_alias() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("### Environment").nth(1).expect("README has an Environment section");
    let rows: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.split('|').map(|c| c.trim().trim_matches('`').to_string()).collect())
        .collect();
    let listed: Vec<(&str, &str)> = rows.iter().map(|r| (r[1].as_str(), r[2].as_str())).collect();
    let expected: Vec<(&str, &str)> =
        ALL.iter().map(|v| (v.name, v.aliases.first().copied().unwrap_or(""))).collect();
    assert_eq!(listed, expected, "README's environment table and vlexivo_core::envvars::ALL differ");
    assert!(ALL.iter().all(|v| v.aliases.len() <= 1), "the table has one column for older names");
}
