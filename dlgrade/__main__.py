from dlgrade.cli import main

raise SystemExit(main())
