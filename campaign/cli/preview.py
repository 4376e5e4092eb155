"""`campaign preview`: write the issue's HTML and text to build/issue-N/ (in progress)."""
