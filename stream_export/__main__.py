from stream_export.cli import main

raise SystemExit(main())
