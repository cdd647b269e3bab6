"""Downloads, one after another, from the HTTP server at the URL given (127.0.0.1).

True verdict: io-bound (threads would overlap the waits).
"""

import sys
import urllib.request


def download(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


if __name__ == "__main__":
    base = sys.argv[1]
    print(sum(download(f"{base}/page/{index}") for index in range(20)))
