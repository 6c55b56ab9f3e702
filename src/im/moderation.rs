//! Sensitive words: a list read from `moderation.words_file`, matched with Aho-Corasick over a
//! folded form of the text (lower case, full-width forms as half-width), anywhere in the text, so
//! CJK words match without word boundaries. The list is swapped atomically on reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// One compiled word list.
pub struct WordList {
    matcher: Option<AhoCorasick>,
    words: Vec<String>,
}

/// What a scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The distinct words that matched, in list order.
    pub rules: Vec<String>,
    /// The text with every matched character replaced by `*`.
    pub masked: String,
}

/// Folds one character the way both the words and the text are folded: full-width ASCII forms
/// and the ideographic space become their half-width forms, then letters become lower case.
/// Exactly one character comes out, so positions in the folded text are positions in the text.
fn fold(c: char) -> char {
    let c = match u32::from(c) {
        0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    };
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(single), None) => single,
        _ => c,
    }
}

impl WordList {
    /// A list of words (blank entries are skipped).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(words: I) -> WordList {
        let mut list: Vec<String> = words
            .into_iter()
            .map(|w| w.as_ref().trim().chars().map(fold).collect::<String>())
            .filter(|w| !w.is_empty())
            .collect();
        list.sort();
        list.dedup();
        let matcher = if list.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(&list)
                .ok()
        };
        WordList {
            matcher,
            words: list,
        }
    }

    /// Reads a list: one word per line; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// The I/O error when the file cannot be read.
    pub fn load(path: &Path) -> std::io::Result<WordList> {
        let text = std::fs::read_to_string(path)?;
        Ok(WordList::new(
            text.lines()
                .filter(|line| !line.trim_start().starts_with('#')),
        ))
    }

    /// How many words the list has.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Scans a text; `None` when nothing matched.
    pub fn scan(&self, text: &str) -> Option<Scan> {
        let matcher = self.matcher.as_ref()?;
        let original: Vec<char> = text.chars().collect();
        let folded: String = original.iter().copied().map(fold).collect();
        // Byte offset of each folded character, to map matches back to character positions.
        let starts: Vec<usize> = folded.char_indices().map(|(i, _)| i).collect();
        let mut hit = vec![false; original.len()];
        let mut rules: Vec<usize> = Vec::new();
        for found in matcher.find_overlapping_iter(&folded) {
            rules.push(found.pattern().as_usize());
            let first = starts.partition_point(|&s| s < found.start());
            let end = starts.partition_point(|&s| s < found.end());
            for flag in &mut hit[first..end] {
                *flag = true;
            }
        }
        if rules.is_empty() {
            return None;
        }
        rules.sort_unstable();
        rules.dedup();
        let masked = original
            .iter()
            .zip(&hit)
            .map(|(c, masked)| if *masked { '*' } else { *c })
            .collect();
        Some(Scan {
            rules: rules
                .into_iter()
                .filter_map(|i| self.words.get(i).cloned())
                .collect(),
            masked,
        })
    }
}

/// The list in use, replaced whole on reload.
#[derive(Clone)]
pub struct Words {
    current: Arc<RwLock<Arc<WordList>>>,
    file: Option<PathBuf>,
}

impl Words {
    /// Loads `file` (an empty list when `None`). A file that cannot be read is logged and
    /// leaves the list empty until it can be.
    pub fn open(file: Option<PathBuf>) -> Words {
        let list = match &file {
            Some(path) => WordList::load(path).unwrap_or_else(|error| {
                tracing::error!(path = %path.display(), %error, "cannot read the sensitive-word list");
                WordList::new(Vec::<String>::new())
            }),
            None => WordList::new(Vec::<String>::new()),
        };
        if let Some(path) = &file {
            tracing::info!(path = %path.display(), words = list.len(), "sensitive words loaded");
        }
        Words {
            current: Arc::new(RwLock::new(Arc::new(list))),
            file,
        }
    }

    /// The list in use.
    pub fn get(&self) -> Arc<WordList> {
        self.current
            .read()
            .map(|list| list.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Reads the file again. A failed read keeps the list in use.
    pub fn reload(&self) {
        let Some(path) = &self.file else { return };
        match WordList::load(path) {
            Ok(list) => {
                tracing::info!(path = %path.display(), words = list.len(), "sensitive words reloaded");
                let list = Arc::new(list);
                match self.current.write() {
                    Ok(mut current) => *current = list,
                    Err(poisoned) => *poisoned.into_inner() = list,
                }
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot reload the sensitive-word list; keeping the old one");
            }
        }
    }

    /// Reloads on SIGHUP and whenever the file's modification time or size changes, until
    /// `alive` can no longer be upgraded (the IM service is gone).
    pub fn watch<T: Send + Sync + 'static>(&self, alive: Weak<T>) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let words = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let stamp = |path: &Path| -> Option<(SystemTime, u64)> {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.modified().ok()?, meta.len()))
            };
            let mut seen = stamp(&path);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = tick.tick() => {
                        if alive.strong_count() == 0 {
                            return;
                        }
                        let now = stamp(&path);
                        if now != seen {
                            seen = now;
                            words.reload();
                        }
                    }
                    _ = signalled => {
                        seen = stamp(&path);
                        words.reload();
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_case_and_width_insensitively_and_inside_cjk_text() {
        let list = WordList::new(["BadWord", "敏感词", "ｆｏｏ"]);
        let scan = list.scan("this is ＢＡＤｗｏｒｄ!").unwrap();
        assert_eq!(scan.rules, vec!["badword"]);
        assert_eq!(scan.masked, "this is *******!");
        let scan = list.scan("这是一个敏感词测试").unwrap();
        assert_eq!(scan.masked, "这是一个***测试");
        assert_eq!(list.scan("FOO").unwrap().rules, vec!["foo"]);
        assert!(list.scan("clean text 你好").is_none());
    }

    #[test]
    fn overlapping_words_are_all_masked() {
        let list = WordList::new(["abc", "cde"]);
        let scan = list.scan("xabcdex").unwrap();
        assert_eq!(scan.rules, vec!["abc", "cde"]);
        assert_eq!(scan.masked, "x*****x");
    }

    #[test]
    fn empty_list_matches_nothing() {
        assert!(WordList::new(["", "  "]).scan("anything").is_none());
    }
}
