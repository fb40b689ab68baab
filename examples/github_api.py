"""List a GitHub user's or organization's repositories and their open issues, through the GitHub REST API.

    export GITHUB_TOKEN=github_pat_...         # sent as "Authorization: Bearer ..." to api.github.com only
    crawler crawl examples/github_api.py -a owner=python -o github.jsonl
    crawler crawl examples/github_api.py -a owner=octocat -a kind=users -o github.jsonl

Pages follow the Link header's rel="next" ("Using pagination in the REST API").  The host policy reads
``X-RateLimit-Limit``, ``-Remaining``, ``-Used`` and ``-Reset`` (epoch seconds) and spreads the quota left over the
time left, waiting for the reset when it runs out.  The issues endpoint lists pull requests too; they are skipped.
Another API base (GitHub Enterprise, a local fake): ``-a api=http://127.0.0.1:8000``, and let the token go there:
``-s 'auth.hosts=["127.0.0.1:8000"]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from crawler import Request, Response, Spider


class GitHubRepos(Spider):
    name = "github"
    api = "https://api.github.com"
    owner = "python"
    kind = "orgs"  # or "users"
    per_page = "100"
    paginate = {"parse": "link", "parse_issues": "link"}
    custom_settings = {
        "auth": {"kind": "bearer", "secret": "env:GITHUB_TOKEN", "hosts": ["api.github.com"]},
        "crawl": {
            "headers": {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
            "obey_robots": False,  # an API under its terms of use, not a site for crawlers
        },
    }

    async def start(self) -> AsyncIterator[Request]:
        yield Request(url=f"{self.api}/{self.kind}/{self.owner}/repos", params={"per_page": self.per_page})

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for repo in response.json():
            name = repo["full_name"]
            yield {"type": "repo", "repo": name, "stars": repo["stargazers_count"], "url": repo["html_url"]}
            if repo["open_issues_count"]:
                url = f"{self.api}/repos/{name}/issues"
                params = {"state": "open", "per_page": self.per_page}
                yield Request(url=url, params=params, callback=self.parse_issues, cb_kwargs={"repo": name})

    def parse_issues(self, response: Response, repo: str) -> Iterator[dict[str, Any]]:
        for issue in response.json():
            if "pull_request" not in issue:
                yield {"type": "issue", "repo": repo, "number": issue["number"], "title": issue["title"]}
