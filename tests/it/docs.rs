//! Every configuration example in the docs loads with the real parser (unknown keys rejected).

use std::path::Path;

use flyteauth::testing::Config;

fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some((i + 1, String::new())),
            Some((start, body)) => {
                if line.trim_start().starts_with("```") {
                    out.push((*start, std::mem::take(body)));
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_yaml_example_in_the_docs_is_a_valid_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, yaml) in yaml_blocks(&text) {
            if let Err(e) = Config::from_yaml(&yaml, root) {
                panic!("{}:{line}: {e}", file.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected the docs to carry config examples, found {checked}"
    );
    // The repository's own config.yaml too.
    Config::load(&root.join("config.yaml")).unwrap();
}
