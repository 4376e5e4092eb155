"""Web apps: the readers' service (`campaign serve`) and the editor's live preview, as two separate apps."""
