from xenvmi.cli import main

raise SystemExit(main())
