"""``reer serve``: a live, read-only web view of a run, from its store alone: the overview, the
records table and each record's search tree and diff, with the JSON behind each page under /api/.

``server`` (the command), ``app`` (the routes), ``data`` (what each page shows, from the store
and the other reading commands), ``pages``/``record_page``/``html`` (the HTML, every text
escaped), ``diff`` (the final thinking against the draft), ``assets`` (style and script)."""
