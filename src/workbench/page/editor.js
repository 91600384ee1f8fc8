/* built by web/workbench/build.sh */
