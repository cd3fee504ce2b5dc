import sys

from ivrpay.cli import main

sys.exit(main())
