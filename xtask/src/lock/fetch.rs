//! Parallel fetching for the resolver: a small pool of threads that loads project pages and wheel
//! metadata ahead of the (sequential) PubGrub solver.
//!
//! When the solver learns a package's dependencies, their pages are requested at once; when a
//! page arrives, the metadata of the version the solver will most likely pick is read too. The
//! solver then finds most answers waiting. Each result is computed once and shared.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use pep440_rs::Version;

use crate::lock::candidates::Selector;
use crate::lock::index::{IndexClient, ProjectFile, ProjectPage};
use crate::lock::metadata::{MetadataReader, MetadataSource};
use crate::packaging::core_metadata::CoreMetadata;

/// How many requests run at once.
pub(crate) const WORKERS: usize = 12;

pub(crate) type Shared<T> = Result<Arc<T>, Arc<anyhow::Error>>;

enum Job {
    Page(String),
    Metadata(String, Version, ProjectFile),
}

#[derive(Default)]
struct State {
    pages: HashMap<String, Option<Shared<ProjectPage>>>,
    metadata: HashMap<(String, Version), Option<Shared<CoreMetadata>>>,
    queue: VecDeque<Job>,
    shutdown: bool,
}

struct Inner {
    /// Print each request's start and duration (to see where a slow lock waits).
    trace: bool,
    index: IndexClient,
    reader: MetadataReader,
    selector: Selector,
    preferred: BTreeMap<String, Version>,
    state: Mutex<State>,
    changed: Condvar,
    pages_from_network: AtomicUsize,
    pages_from_cache: AtomicUsize,
    metadata_counts: Mutex<BTreeMap<String, usize>>,
}

/// The pool. Dropping it stops the workers.
pub(crate) struct Sources {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
}

/// Request counts for the summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchStats {
    pub(crate) pages_from_network: usize,
    pub(crate) pages_from_cache: usize,
    /// Metadata reads by where they were answered from.
    pub(crate) metadata: BTreeMap<String, usize>,
}

impl Sources {
    pub(crate) fn start(
        index: IndexClient,
        reader: MetadataReader,
        selector: Selector,
        preferred: BTreeMap<String, Version>,
        trace: bool,
    ) -> Sources {
        let inner = Arc::new(Inner {
            trace,
            index,
            reader,
            selector,
            preferred,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            pages_from_network: AtomicUsize::new(0),
            pages_from_cache: AtomicUsize::new(0),
            metadata_counts: Mutex::new(BTreeMap::new()),
        });
        let workers = (0..WORKERS)
            .map(|_| {
                let inner = inner.clone();
                std::thread::spawn(move || worker(&inner))
            })
            .collect();
        Sources { inner, workers }
    }

    pub(crate) fn selector(&self) -> &Selector {
        &self.inner.selector
    }

    /// Ask for a page without waiting for it.
    pub(crate) fn prefetch_page(&self, name: &str) {
        let mut state = self.inner.state.lock().expect("fetch state");
        if !state.pages.contains_key(name) {
            state.pages.insert(name.to_string(), None);
            state.queue.push_back(Job::Page(name.to_string()));
            self.inner.changed.notify_all();
        }
    }

    /// The page of `name`, waiting for it if needed.
    pub(crate) fn page(&self, name: &str) -> Shared<ProjectPage> {
        self.prefetch_page(name);
        let mut state = self.inner.state.lock().expect("fetch state");
        loop {
            if let Some(Some(result)) = state.pages.get(name) {
                return result.clone();
            }
            state = self.inner.changed.wait(state).expect("fetch state");
        }
    }

    /// Ask for metadata without waiting for it.
    pub(crate) fn prefetch_metadata(&self, name: &str, version: &Version, file: &ProjectFile) {
        let mut state = self.inner.state.lock().expect("fetch state");
        request_metadata(&mut state, &self.inner.changed, name, version, file);
    }

    /// The metadata of `name` `version` read from `file`, waiting for it if needed.
    pub(crate) fn metadata(&self, name: &str, version: &Version, file: &ProjectFile) -> Shared<CoreMetadata> {
        let key = (name.to_string(), version.clone());
        let mut state = self.inner.state.lock().expect("fetch state");
        request_metadata(&mut state, &self.inner.changed, name, version, file);
        loop {
            if let Some(Some(result)) = state.metadata.get(&key) {
                return result.clone();
            }
            state = self.inner.changed.wait(state).expect("fetch state");
        }
    }

    /// Warnings of every page loaded so far (a newer index API minor version), sorted, once each.
    pub(crate) fn page_warnings(&self) -> Vec<String> {
        let state = self.inner.state.lock().expect("fetch state");
        let mut warnings: Vec<String> = state
            .pages
            .values()
            .filter_map(|page| page.as_ref()?.as_ref().ok())
            .flat_map(|page| page.warnings.iter().cloned())
            .collect();
        warnings.sort();
        warnings.dedup();
        warnings
    }

    pub(crate) fn stats(&self) -> FetchStats {
        FetchStats {
            pages_from_network: self.inner.pages_from_network.load(Ordering::Relaxed),
            pages_from_cache: self.inner.pages_from_cache.load(Ordering::Relaxed),
            metadata: self.inner.metadata_counts.lock().expect("counts").clone(),
        }
    }
}

fn request_metadata(state: &mut State, changed: &Condvar, name: &str, version: &Version, file: &ProjectFile) {
    let key = (name.to_string(), version.clone());
    if let std::collections::hash_map::Entry::Vacant(slot) = state.metadata.entry(key) {
        slot.insert(None);
        state.queue.push_back(Job::Metadata(name.to_string(), version.clone(), file.clone()));
        changed.notify_all();
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.inner.state.lock().expect("fetch state").shutdown = true;
        self.inner.changed.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker(inner: &Inner) {
    loop {
        let job = {
            let mut state = inner.state.lock().expect("fetch state");
            loop {
                if state.shutdown {
                    return;
                }
                if let Some(job) = state.queue.pop_front() {
                    break job;
                }
                state = inner.changed.wait(state).expect("fetch state");
            }
        };
        let started = std::time::Instant::now();
        let trace = inner.trace;
        match job {
            Job::Page(name) => {
                if trace {
                    eprintln!("page {name} start");
                }
                let result = inner.index.project(&name).map(Arc::new).map_err(Arc::new);
                let mut state = inner.state.lock().expect("fetch state");
                if let Ok(page) = &result {
                    let counter = if page.from_cache { &inner.pages_from_cache } else { &inner.pages_from_network };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if let Some((version, file)) = inner.selector.likely_pick(page, inner.preferred.get(&name)) {
                        request_metadata(&mut state, &inner.changed, &name, &version, &file);
                    }
                }
                if trace {
                    eprintln!("page {name} {:?}", started.elapsed());
                }
                state.pages.insert(name, Some(result));
                inner.changed.notify_all();
            }
            Job::Metadata(name, version, file) => {
                let result = inner.reader.read(&file);
                if let Ok((_, source)) = &result {
                    let label = match source {
                        MetadataSource::Cache => "cache",
                        MetadataSource::CachedWheel => "cached wheel",
                        MetadataSource::Pep658 => "pep 658",
                        MetadataSource::Ranges => "range requests",
                        MetadataSource::WholeWheel => "whole wheel",
                    };
                    *inner.metadata_counts.lock().expect("counts").entry(label.to_string()).or_default() += 1;
                }
                let result = result.map(|(metadata, _)| Arc::new(metadata)).map_err(Arc::new);
                let mut state = inner.state.lock().expect("fetch state");
                if trace {
                    eprintln!("metadata {name} {version} {:?}", started.elapsed());
                }
                state.metadata.insert((name, version), Some(result));
                inner.changed.notify_all();
            }
        }
    }
}
