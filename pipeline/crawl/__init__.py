"""The crawl stage: a polite, resumable crawler that writes what it fetches as WARC 1.1.

Plain Python and requests, never Prefect (flows/crawl.py wraps it). One module per concern:

- `urls`       URL normalization (one page, one key), scope rules, limits, crawler-trap guards
               and link extraction from HTML: each check returns a reason when it refuses.
- `frontier`   the crawl state in SQLite (`<root>/crawl/<source>/frontier.sqlite`): every URL
               with its state and reason, per-host timing, crawl generations, and where each
               response lies in the WARC files. Shared by the worker threads; every state change
               is one transaction, and a killed crawl resumes from it.
- `warcwriter` WARC 1.1 files of one generation (`<prefix>-00000.warc.gz`, ...): request,
               response, revisit and metadata records, size rotation, and truncation back to the
               last committed record after a kill.
- `sources`    discovery: RSS/Atom/JSON feeds, sitemaps (indexes, gzipped, plain text), feed
               links in pages, an article-URL heuristic, and the offline Project Gutenberg
               catalog (`pg_catalog.csv`) with mirror URLs for the texts.
- `fetch`, `safety`, `robots`, `consent`
               one HTTP attempt with its safety checks and everything the WARC writer needs;
               robots.txt; opt-out signals (X-Robots-Tag, meta robots, TDM reservation) and a
               page's stated license.
- `crawler`    the loop: per-host politeness and a global concurrency limit over a thread pool.

A crawl run is one generation: the frontier persists across generations, so the next run sends
conditional requests (ETag / Last-Modified) for what it fetched before and finds new pages.
Ordering that makes a kill at any moment safe: the WARC records of a URL are written, flushed
and fsynced first; then one frontier transaction marks the URL and the file's new committed end;
on restart the WARC file is cut back to that end and in-flight URLs are queued again.
"""
